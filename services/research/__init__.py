"""The Research coordinator: a research task in, sub-queries planned by a model (or given),
answered in parallel (bounded fan-out, a concurrency limit and a timeout each) and a summary
whose citations name the sub-answers it rests on. Served at ``/api/v1/research``. See
docs/services/engines.md."""
