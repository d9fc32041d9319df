"""The domain of QoS judgement: the regulations, the plan, and what is computed against them.

- profiles.py: the regulation profiles (QCVN 81/126/34, Decision 1110), the declared speeds and
  the report periods, loaded from standards/*.yaml, the one source of every limit (the API
  judges with them; deploy/grafana/build.py draws them);
- evaluate.py: the verdict per operator, place, technology and indicator; answer.py: a whole
  compliance answer (profiles in force, groups, rows); report.py: the monthly report;
- plan.py and kpi.py: the plan's indicators, its report kinds and the KPI values;
- qos.py: the QoS time series' points (a statistic per group and step, with completeness);
- tables.py: CSV text and XLSX workbooks of any table.

Nothing here speaks HTTP (no FastAPI, no Starlette): api/ translates requests into these calls
and their results into responses (tests/unit/test_compliance_layer.py holds it to that).
"""
