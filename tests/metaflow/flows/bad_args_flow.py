"""A flow whose @flowrecord argument is wrong: Metaflow must refuse it before running."""

from metaflow import FlowSpec, flowrecord, step


class BadArgsFlow(FlowSpec):
    @flowrecord(policy="sometimes")
    @step
    def start(self):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    BadArgsFlow()
