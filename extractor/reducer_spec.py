"""A reducer's name, parsed: its kind, widths and activation (``pca:128``, ``ae:1024-512-256``,
``ae:256:relu``).

The one type both `extractor.reduce` (the registry of kinds, fitting, files) and
`extractor.reducer_nets` (the torch networks of ``ae`` and ``head``) need, kept below both so
that the dependency goes one way: ``reduce`` -> ``reducer_nets`` -> ``reducer_spec``.
`extractor.reduce.parse_reducer` makes one from a name and checks it against the registered
kinds.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReducerSpec:
    """A parsed reducer name: ``kind``, the widths (the last is the output) and activation."""

    kind: str
    dims: tuple[int, ...]
    activation: str = "linear"

    @property
    def dim(self) -> int:
        """The output width."""
        return self.dims[-1]

    @property
    def name(self) -> str:
        """The canonical spelling, ``pca:128``, ``ae:1024-512-256``, ``ae:256:relu``."""
        text = f"{self.kind}:{'-'.join(map(str, self.dims))}"
        return text if self.activation == "linear" else f"{text}:{self.activation}"

    @property
    def file_name(self) -> str:
        """``pca_128.pt``: the name of the file under a method's reducer folder."""
        return self.name.replace(":", "_") + ".pt"
