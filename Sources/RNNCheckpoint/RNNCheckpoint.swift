// RNNCheckpoint: placeholder until its issue lands.
