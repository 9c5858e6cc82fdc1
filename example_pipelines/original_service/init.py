print("init: preparing")
