"""axe-core (from npm: make test runs npm ci) on every page, light, dark and on a phone, with every panel open:
no serious or critical violation, WCAG AA contrast included."""

import pytest

from tests.e2e.test_pages_on_a_phone import open_every_panel
from tests.servers import ROOT

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
LOOKS = {
    "light": {"color_scheme": "light", "viewport": {"width": 1200, "height": 800}},
    "dark": {"color_scheme": "dark", "viewport": {"width": 1200, "height": 800}},
    "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
}
SERIOUS = """async () => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations.filter(v => v.impact === "serious" || v.impact === "critical")
    .map(v => v.id + ": " + v.help + " :: " + v.nodes.slice(0, 4).map(n => n.target.join(" ") + " "
         + (n.any[0] ? n.any[0].message : "")).join(" | "));
}"""


@pytest.mark.parametrize("look", LOOKS.keys())
@pytest.mark.parametrize("name", ["chat", "delete", "edit", "shared", "sign-in", "sign-up", "admin"])
def test_axe_finds_nothing_serious_on_any_page(browser, pages, name, look):
    context = browser.new_context(**LOOKS[look], bypass_csp=True)  # axe is injected as an inline script
    if name not in ("sign-in", "sign-up"):
        context.add_cookies(pages["cookies"])
    page = context.new_page()
    page.goto(pages[name])
    open_every_panel(page)
    page.add_script_tag(path=str(AXE))
    violations = page.evaluate(SERIOUS)
    context.close()
    assert violations == [], "\n".join(violations)
