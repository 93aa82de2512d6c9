"""Distinct values of one field of JSON-lines records, with how often each occurs.

Records without the field count under ``null`` (and in the ``distinct / missing field``
counter). The built-in ``count`` aggregate does the counting in C.

    pymr submit jobs/distinct_values.py sample_data/events/ -o out/kinds --field kind
"""

import pymr


class DistinctValues(pymr.Job):
    input_format = "jsonl"
    aggregate = "count"
    options = [pymr.Option("field", str, required=True, help="The field whose values to count.")]

    def map(self, key, record):
        if not isinstance(record, dict) or self.options.field not in record:
            self.increment_counter("distinct", "missing field")
            yield None, 1
            return
        value = record[self.options.field]
        yield (value if isinstance(value, (str, int, float, bool)) else pymr_json(value)), 1


def pymr_json(value):
    import json

    return json.dumps(value, sort_keys=True)


if __name__ == "__main__":
    DistinctValues.main()
