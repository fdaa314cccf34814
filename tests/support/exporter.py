"""The dcgm-exporter page fixtures (``tests/fixtures/exporter``) and what tests know of them."""

from __future__ import annotations

from pathlib import Path
from typing import Final

FIXTURES: Final = Path(__file__).resolve().parent.parent / "fixtures" / "exporter"
# The A100 of dcgm-exporter-3.3-mig.txt whose MIG instance 13 is reported beside it.
MIG_PARENT: Final = "GPU-3431b6e1-96c2-f8f5-b8a6-24f2a1d9c660"
OTHER_GPU: Final = "GPU-8d1c0e4a-2b7f-6a31-c4d2-9e05f7b1a3e8"
NOT_SUPPORTED: Final = "DCGM not supported (int64 blank sentinel 9223372036854775794)"
