"""Sinks: where decided inspections go (database, CSV, JSON Lines, NG image + heatmap files, reject signal).

Each sink takes a batch of ``(Inspection, image, Prediction)`` triples; image and prediction are ``None`` for error
rows. Sinks write per batch, so a crash in the middle of a folder loses nothing already decided. The pipeline wraps
every sink in ``ResilientSink`` (retries, then rows spooled to disk); ``RejectHookSink`` keeps its own spool of
undelivered reject signals and replays it, in order, once the PLC's endpoint answers again.
"""

from inspect_app.engine.sink_base import CSV_FIELDS, Sink, SinkItem, inspection_to_dict, row_key
from inspect_app.engine.sink_database import DatabaseSink
from inspect_app.engine.sink_files import CsvSink, HeatmapFileSink, JsonLinesSink
from inspect_app.engine.sink_reject import RejectHookSink
from inspect_app.engine.sink_spool import ResilientSink

__all__ = [
    "CSV_FIELDS", "CsvSink", "DatabaseSink", "HeatmapFileSink", "JsonLinesSink", "RejectHookSink", "ResilientSink",
    "Sink", "SinkItem", "inspection_to_dict", "row_key",
]
