"""Which data library an object belongs to, asked without importing any of them.

Kept apart from :mod:`flowrecord.collectors.fingerprint` so that the question
"is this a data frame?", asked of every value a task reads or writes, costs no
import of the hashing machinery when the answer is no.
"""

from __future__ import annotations

import sys

__all__ = ["data_kind"]


def data_kind(obj: object) -> str | None:
    """Say which data library ``obj`` belongs to: "pandas", "polars", "arrow" or None.

    Subclasses count (a GeoDataFrame is a pandas frame). Only libraries that
    are already imported are asked: an object of a library nobody imported
    cannot exist, and asking must not import pandas or polars.
    """
    modules = sys.modules
    if "pyarrow" in modules:
        pa = modules["pyarrow"]
        if isinstance(obj, (pa.Table, pa.RecordBatch, pa.Array, pa.ChunkedArray)):
            return "arrow"
    if "pandas" in modules:
        pd = modules["pandas"]
        if isinstance(obj, (pd.DataFrame, pd.Series)):
            return "pandas"
    if "polars" in modules:
        pl = modules["polars"]
        if isinstance(obj, (pl.DataFrame, pl.Series, pl.LazyFrame)):
            return "polars"
    return None
