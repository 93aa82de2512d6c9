import string


def normalize(word):
    return word.strip(string.punctuation)


class Tally:
    def __init__(self, n):
        self.n = n
