"""Export: a base generator + a concept's LoRA -> checked ONNX editors (fp32, int8, fp16, .ort).

* ``onnx_export``: merge, bake the text in, ``torch.onnx.export``, metadata, parity, the whole checked export.
* ``quantize``: static QDQ int8, fp16, ``.ort`` conversion.
* ``mobile_check``: which ops NNAPI / CoreML would not take, and why.

Import the submodules directly; this package imports nothing heavy (the runtime, ``factory.runtime``,
never needs torch).
"""
