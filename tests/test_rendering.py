from chatbot.chat.rendering import render_markdown


def test_markdown_basics():
    html = render_markdown("**bold** and a [link](https://example.com)\n\n- one\n- two")
    assert "<strong>bold</strong>" in html
    assert '<a href="https://example.com" target="_blank" rel="nofollow noopener noreferrer">link</a>' in html
    assert "<li>one</li>" in html


def test_raw_html_from_the_model_is_shown_as_text():
    html = render_markdown('<script>alert(1)</script>\n\n<img src=x onerror="alert(1)">')
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_javascript_links_are_not_links():
    html = render_markdown("[click](javascript:alert(1)) and [data](data:text/html;base64,PHNjcmlwdD4=)")
    assert "href" not in html


def test_code_blocks_are_highlighted_and_escaped():
    html = render_markdown("```python\nif a < b:\n    print('<b>')\n```")
    assert '<span class="k">if</span>' in html
    assert "&lt;b&gt;" in html and "<b>" not in html


def test_unknown_language_code_is_escaped_plainly():
    assert "&lt;tag&gt;" in render_markdown("```nosuchlang\n<tag>\n```")


def test_tables():
    assert "<table>" in render_markdown("| a | b |\n|---|---|\n| 1 | 2 |")
