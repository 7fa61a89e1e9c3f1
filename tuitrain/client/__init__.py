"""Provides the run client for training processes: core (RunClient: register or attach, write,
steer, finish; install_sigterm), api (`tuitrain.init` -> Run), lr (LR steering on a LambdaLR)
and lifecycle (a truthful status at interpreter exit). Used by the trainer, `tuitrain.init`, the
HF callback and the Accelerate tracker."""
