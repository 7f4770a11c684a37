"""Looking inside: what the first lectures of a CNN course compute (basics/), on a matrix or an image."""
