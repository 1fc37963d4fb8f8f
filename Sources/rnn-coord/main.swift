print("rnn-coord: not built yet")
