print("rnn-bench: not built yet")
