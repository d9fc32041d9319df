"""The ingest pipeline: sources -> columnar buffer -> numba rollups -> store, in one direction.

- intake.py: `IngestPipeline`, the front door (`offer` for a probe's message from MQTT or
  HTTPS, `accept_samples` for other sources) and the flush schedule with back-pressure;
- buffer.py: the columnar buffer of what was accepted since the last flush;
- dedup.py: the de-duplication window (batch identity, seq conflicts);
- expand.py: buffer rows -> samples (numba), share counter series;
- flush.py: one flush stored in one transaction, refused batches split out, outputs told.
The series registry the sources name their series in is collector/series.py.
"""

from collector.pipeline.buffer import OnRejected
from collector.pipeline.dedup import SeqWindow
from collector.pipeline.flush import RESOLUTION_S, FlushOutput, StoredFlush
from collector.pipeline.intake import Accepted, Duplicate, IngestPipeline, Offered
from collector.series import BatchRefused

__all__ = [
    "RESOLUTION_S",
    "Accepted",
    "BatchRefused",
    "Duplicate",
    "FlushOutput",
    "IngestPipeline",
    "Offered",
    "OnRejected",
    "SeqWindow",
    "StoredFlush",
]
