"""What the process remembers of other servers is forgotten at once, whichever module remembers it."""

from chatbot.services import catalogue, discovery, inference, remembered
from chatbot.web import health


def test_forgetting_empties_what_every_module_remembers_of_other_servers():
    kept = [discovery._known, discovery._counts, discovery._windows, catalogue._known, inference._come_back]
    kept.append(health._probes)
    for number, mapping in enumerate(kept):
        mapping[f"http://127.0.0.1:{number}"] = number
    own = remembered.Remembered()
    own["a"] = 1
    remembered.forget_all()
    assert [len(mapping) for mapping in [*kept, own]] == [0] * 7


def test_mappings_that_change_together_share_one_lock():
    assert discovery._known.lock is discovery._counts.lock is discovery._windows.lock
    assert catalogue._known.lock is catalogue._asking.lock
    assert remembered.Remembered().lock is not remembered.Remembered().lock
