"""The networks: the MLP and its parts, the perceptron, the chain-rule backward, model families."""
