"""Export: a base generator + a concept's LoRA -> checked ONNX editors (fp32, int8, fp16, .ort).

* ``onnx_export``: the editor module (LoRA merged, text baked in), ``torch.onnx.export``, metadata, parity.
* ``rewrites``: exact graph rewrites (static-dim folding, NNAPI-friendly MatMul/Softmax layouts).
* ``quantize``: static QDQ int8, fp16, ``.ort`` conversion.
* ``mobile_check``: which ops NNAPI / CoreML would not take, and why.
* ``editor``: the whole checked export into ``editors/<concept>/`` and card.json; the pix2pix reference.

Import the submodules directly; this package imports nothing heavy (the runtime, ``factory.runtime.editor``,
never needs torch).
"""
