"""The template globals of chatbot/web/templating.py that are more than a name for another module's function."""

from chatbot.web.templating import icon
from tests.servers import ROOT


def test_an_icon_draws_a_drawing_the_sprite_holds_and_escapes_its_name():
    sprite = (ROOT / "templates" / "icons" / "_sprite.html").read_text()
    assert '<use href="#icon-copy"/>' in icon("copy") and "copy" in sprite
    assert "<script" not in icon('"><script>x</script>')
