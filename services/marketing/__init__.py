"""The Marketing engine: a campaign brief in, copy per channel out (email, social, ads), each
within its channel's length limits, written by a model through the AI router. Served at
``/api/v1/marketing``. See docs/services/engines.md."""
