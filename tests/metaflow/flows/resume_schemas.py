"""The schema ResumeFlow's ``check`` step validates against, imported only there."""

import pandera.pandas as pa

PositiveSchema = pa.DataFrameSchema({"v": pa.Column(int, pa.Check.ge(0))}, name="positive")
