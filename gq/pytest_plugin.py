"""pytest plugin (registered as `gq` under the `pytest11` entry point): the
`gq_queue` fixture, a real `gq.Queue` on a temporary data dir per test.

    import pytest
    from gq.testing import drain, assert_submitted

    @pytest.mark.gq_queue(handlers_from=myapp.queue, backoff_base=0.01)
    def test_welcome_email(gq_queue):
        myapp.signup(gq_queue, "a@example.com")
        assert drain(gq_queue).completed == 1

Marker arguments: `handlers_from` (a queue whose handlers to run), `inline=True`
(every submit runs its job before returning, see `gq.testing.inline`), and any
`gq.Queue` option. Without the marker the queue has no handlers: register some
with `@gq_queue.handler(...)` in the test.
"""

from __future__ import annotations

import pytest


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "gq_queue(handlers_from=None, inline=False, **queue_options): "
        "configure the gq_queue fixture (gq.testing)")


@pytest.fixture
def gq_queue(request):
    """A real gq.Queue on a fresh temporary data dir, removed after the test."""
    from gq.testing import inline, temporary_queue

    marker = request.node.get_closest_marker("gq_queue")
    options = dict(marker.kwargs) if marker else {}
    run_inline = options.pop("inline", False)
    with temporary_queue(**options) as q:
        if run_inline:
            with inline(q):
                yield q
        else:
            yield q
