"""The browser editor (``factory web``): the workspace's editors and filter packs run in the browser with
onnxruntime-web. ``server`` serves the page (``static/``) and the workspace's files, ``site`` maps URLs to
files and writes the static copy (``--out``), ``vendor`` installs onnxruntime-web from the npm registry."""
