"""Keras 3 code shared by the Keras backends (TensorFlow and JAX engines): the model built from
the layer description, the canonical weight layout, and PyTorch's optimizer formulas.

Written with `keras.ops` only, so it runs on whichever engine the process imported Keras with.
"""
