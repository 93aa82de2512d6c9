"""An iterative test job: halve every number, round after round, until none is above 1.

Step 2 repeats while its counter ``halving/above one`` is non-zero, so the data decide
the number of rounds; ``--then-sum`` adds a last step after the repeated one,
``--fail-at N`` makes the reduce raise when a number reaches N.
"""

import pymr


class HalveUntilSmall(pymr.Job):
    options = [
        pymr.Option("max-rounds", int, default=50, help="bound on the halving rounds"),
        pymr.Option("then-sum", bool, default=False, help="add a step summing the results"),
        pymr.Option("fail-at", int, default=0, help="raise in reduce when a number reaches this"),
        pymr.Option("bad-test", bool, default=False, help="repeat_while raises"),
    ]

    def steps(self):
        steps = [
            pymr.Step(map=self.parse),
            pymr.Step(map=self.halve, reduce=self.keep, repeat_while=self.another_round,
                      max_rounds=self.options.max_rounds, reducers=2),
        ]
        if self.options.then_sum:
            steps.append(pymr.Step(map=self.to_total, reduce=self.total))
        return steps

    def parse(self, _, line):
        name, number = line.split()
        yield name, int(number)

    def halve(self, name, number):
        yield name, number // 2 if number > 1 else number

    def keep(self, name, numbers):
        number = sum(numbers)
        if number > 1:
            self.increment_counter("halving", "above one")
        if number == self.options.fail_at:
            raise RuntimeError(f"{name} reached {number}")
        yield name, number

    def another_round(self, counters):
        if self.options.bad_test:
            raise KeyError("no such counter")
        return counters.get("halving", {}).get("above one", 0) > 0

    def to_total(self, name, number):
        yield "total", number

    def total(self, key, numbers):
        yield key, sum(numbers)
