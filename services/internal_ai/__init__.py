"""The Internal AI service: all-MiniLM-L6-v2 (a sentence embedding model, int8 ONNX, shipped
in a PyPI package) on CPU behind an OpenAI-compatible API: embeddings, and chat answered by
what an embedding model can honestly do (classification against given labels, extractive
summaries). The AI router's last provider, and the semantic cache's embedder."""
