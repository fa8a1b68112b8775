import re

from chatbot.chat.maths import LONGEST
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


def test_each_form_of_maths_is_drawn_as_mathml():
    for text, display in [
        ("Euler: $e^{i\\pi}+1=0$.", "inline"),
        ("$$\n\\int_0^1 x\\,dx\n$$", "block"),
        ("A square \\(x^2\\) inline.", "inline"),
        ("\\[\n\\frac{a}{b}\n\\]", "block"),
        ("In a line: \\[a+b\\] and $$c$$.", "block"),
    ]:
        html = render_markdown(text)
        assert f'<math xmlns="http://www.w3.org/1998/Math/MathML" display="{display}">' in html, text
        assert "$" not in html and "\\(" not in html and "\\[" not in html, html
    assert "<mfrac><mrow><mi>a</mi></mrow><mrow><mi>b</mi></mrow></mfrac>" in render_markdown("$\\frac{a}{b}$")
    assert "<p>In a line:" in render_markdown("In a line: \\[a+b\\] and $$c$$.")  # no div inside the paragraph


def test_dollars_of_money_and_code_stay_text():
    assert render_markdown("It costs $5 and $10, or $ 3 $ at most.") == (
        "<p>It costs $5 and $10, or $ 3 $ at most.</p>\n"
    )
    assert render_markdown("`$x$` and \\$y$") == "<p><code>$x$</code> and $y$</p>\n"


def test_html_and_links_written_in_maths_never_reach_the_page():
    for tex in [
        "<script>alert(1)</script>",
        "\\href{javascript:alert(1)}{x}",
        "\\text{<b>bold</b>}",
        "\\text{<img src=x onerror=alert(1)>}",
        "\\style{background:url(javascript:alert(1))}{x}",
        '\\color{red" onload="alert(1)}{x}',
        "\\text{<!DOCTYPE x [<!ENTITY a 'b'>]>}",
    ]:
        html = render_markdown(f"${tex}$ and \\[{tex}\\]")
        assert not re.search(r"<(?!/?(?:p|span|code|m[a-z]+)[ >])", html), html  # MathML and its wrappers only
        assert "javascript:" not in html.replace("$", " ").split("<code")[0] and "onload=" not in html, html
        assert " href=" not in html and " style=" not in html, html


def test_maths_that_cannot_be_drawn_shows_its_source_as_escaped_code():
    assert render_markdown("Broken: $a<\\frac{$.") == (
        '<p>Broken: <span class="math inline"><code class="math-source">$a&lt;\\frac{$</code></span>.</p>\n'
    )
    long = "x+" * LONGEST + "x"
    assert f'<code class="math-source">$${long}$$</code>' in render_markdown(f"$${long}$$")
