// Tree convolutions (LogicConv2d): forward and backward kernels.
