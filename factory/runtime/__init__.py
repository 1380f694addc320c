"""The editor runtime: onnxruntime + numpy + OpenCV only (no torch), for images, folders and videos."""

from factory.runtime.editor import Editor, locate_editor, open_editor, to_input, to_pixels

__all__ = ["Editor", "locate_editor", "open_editor", "to_input", "to_pixels"]
