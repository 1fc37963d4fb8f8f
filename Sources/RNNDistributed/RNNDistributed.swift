// RNNDistributed: placeholder until its issue lands.
