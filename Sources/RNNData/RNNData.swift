// RNNData: placeholder until its issue lands.
