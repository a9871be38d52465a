"""Layers beyond torch.nn: the filter-basis (interspace) convolution and its sharing plans."""
