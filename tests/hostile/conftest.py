"""The hostile corpus's GUI tests use the same window fixtures as tests/ui."""
from tests.ui.conftest import make_window, settings  # noqa: F401 - pytest fixtures
