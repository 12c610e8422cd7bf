"""Text generation behind one boundary: vLLM, the suite's CUDA-graphed sampler, or transformers."""
