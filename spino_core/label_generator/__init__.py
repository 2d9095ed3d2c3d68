"""The label generator: training the semantic and boundary heads on the k labelled images."""
