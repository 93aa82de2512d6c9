def tokenize(line):
    return line.lower().split()
