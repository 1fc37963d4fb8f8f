print("rnn-data: not built yet")
