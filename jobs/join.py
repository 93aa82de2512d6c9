"""Reduce-side join of two CSV datasets: every order with its customer's name and city.

Tagged input: both files go through the same map, which tags each row by the dataset
it comes from (the file name holds ``customers`` or ``orders``) and keys it by
``customer_id``. Each reduce call gets one customer's row and their orders, and writes
one line per order that has a customer (an inner join; orders of unknown customers
are counted in ``join / orders without customer``). A customer's orders are held in
memory until its row is seen, so this suits many customers with few orders each.
Output: ``order_id<TAB>{"order_id", "customer_id", "amount", "name", "city"}``.

    pymr submit jobs/join.py sample_data/shop/ -o out/joined
"""

import os

import pymr


class Join(pymr.Job):
    input_format = "csv"
    reducers = 2

    def map(self, key, row):
        path, _offset = key
        dataset = "customer" if "customers" in os.path.basename(path) else "order"
        yield int(row["customer_id"]), (dataset, row)

    def reduce(self, customer_id, tagged):
        customer = None
        orders = []
        for dataset, row in tagged:
            if dataset == "customer":
                customer = row
            else:
                orders.append(row)
        if customer is None:
            self.increment_counter("join", "orders without customer", len(orders))
            return
        for order in orders:
            yield int(order["order_id"]), {"order_id": int(order["order_id"]), "customer_id": customer_id,
                                           "amount": order["amount"], "name": customer["name"],
                                           "city": customer["city"]}


if __name__ == "__main__":
    Join.main()
