"""The ASO engine (app store optimization): an app's store listing in, keyword and title
suggestions out, the model's relevance combined with scores computed here (where a keyword
already stands in the listing, the stores' length limits, a packed Apple keyword field).
Served at ``/api/v1/aso``. See docs/services/engines.md."""
