"""The main window's views, each built the first time something asks for it.

Building all fourteen views took about half of the window's construction (0.5 s of CPU: the pipeline alone 0.15 s,
compare 0.1 s) though the start shows one of them. Each tab holds a plain container; its view is built into it
when the tab is first shown, or when anything else asks ``views[name]`` (an export, a shortcut, a test).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from PySide6.QtWidgets import QVBoxLayout, QWidget


class LazyViews(Mapping):
    """name -> view, built on first access; ``built()`` holds only the views that exist so far."""

    def __init__(self, factories: dict[str, Callable[[], QWidget]], on_built: Callable[[str, QWidget], None]):
        self._factories = dict(factories)
        self._on_built = on_built
        self._built: dict[str, QWidget] = {}
        self.containers: dict[str, QWidget] = {}  # what each tab holds
        for name in self._factories:
            container = QWidget()
            layout = QVBoxLayout(container)
            layout.setContentsMargins(0, 0, 0, 0)
            self.containers[name] = container

    def __getitem__(self, name: str) -> QWidget:
        view = self._built.get(name)
        if view is None:
            if name not in self._factories:
                raise KeyError(name)
            view = self._built[name] = self._factories[name]()
            self.containers[name].layout().addWidget(view)
            view.show()  # now, not on the layout's next pass: a tab on screen shows its view as it is switched to
            self._on_built(name, view)
        return view

    def __contains__(self, name: object) -> bool:  # Mapping's own would build the view to answer
        return name in self._factories

    def __iter__(self) -> Iterator[str]:
        return iter(self._factories)

    def __len__(self) -> int:
        return len(self._factories)

    def built(self) -> dict[str, QWidget]:
        """The views built so far, by name (asking these never builds another)."""
        return dict(self._built)
