print("rnn-worker: not built yet")
