"""Fast DataFrame helpers for the digest-heavy work of the analysis."""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def arrow_strings(values: pd.Series | pd.Index) -> pa.Array:
    """A string column as one Arrow array, without boxing its elements as Python objects
    (pandas' Arrow-backed strings hand their buffers over as they are)."""
    data = pa.array(values.array, from_pandas=True)
    if isinstance(data, pa.ChunkedArray):
        data = data.combine_chunks()
    if not (pa.types.is_string(data.type) or pa.types.is_large_string(data.type)):
        data = data.cast(pa.large_string())
    return data


def isin(series: pd.Series, values: Iterable[object]) -> pd.Series:
    """`series.isin(values)` for string columns, through pyarrow.

    pandas' isin on Arrow-backed strings boxes every element of `values` as a Python scalar:
    at 300,000 digests that is ten times slower than Arrow's own hash-set kernel, and it was
    most of the analysis time at registry scale. Columns stay Arrow arrays on the way in.
    """
    data = arrow_strings(series)
    if isinstance(values, pd.Series | pd.Index) and values.dtype == series.dtype:
        value_set = arrow_strings(values).drop_null()
    else:
        if isinstance(values, pd.Series | pd.Index):
            values = values.dropna().to_numpy(dtype=object)
        raw = np.asarray([v for v in values if v is not None and v is not pd.NA], dtype=object)
        value_set = pa.array(raw, type=pa.string())
    if value_set.type != data.type:
        value_set = value_set.cast(data.type)
    hits = pc.is_in(data, value_set=value_set).fill_null(False)
    return pd.Series(hits.to_numpy(zero_copy_only=False), index=series.index, dtype=bool)


def grouped_lists(frame: pd.DataFrame, keys: list[str], column: str) -> pd.Series:
    """`frame.groupby(keys)[column].agg(sorted)` without a Python call per group.

    pandas aggregates lists one group at a time in Python (50 µs a group: seconds for the tags
    of a large registry); here the rows are sorted once and cut at the group boundaries. Groups
    with a missing key are dropped, as groupby does; the index is the groupby's (sorted keys).
    """
    rows = frame.loc[frame[keys].notna().all(axis=1), [*keys, column]]
    rows = rows.sort_values([*keys, column], kind="stable")
    starts = np.flatnonzero(~rows.duplicated(keys).to_numpy()) if len(rows) else np.array([], int)
    values = rows[column].to_numpy(dtype=object)
    lists = [list(part) for part in np.split(values, starts[1:])] if len(rows) else []
    heads = rows[keys].iloc[starts]
    index: pd.Index = (
        pd.MultiIndex.from_frame(heads) if len(keys) > 1 else pd.Index(heads[keys[0]], name=keys[0])
    )
    return pd.Series(lists, index=index, name=column, dtype=object)


@contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic garbage collector paused while a loop builds a container per row (tag lists,
    names, records): a collection every 700 new lists walks every container alive, millions of them at
    a million manifests, and took most of such loops' time. Lists of strings hold no cycle,
    so nothing waits for the collector meanwhile."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
