"""The control plane: gRPC servicers around the master loop, which feeds the sans-IO core."""
