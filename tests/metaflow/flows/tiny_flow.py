"""Two steps, no flowrecord in the code: for switching recording on from outside."""

from metaflow import FlowSpec, step


class TinyFlow(FlowSpec):
    @step
    def start(self):
        self.value = 41
        self.next(self.end)

    @step
    def end(self):
        self.answer = self.value + 1


if __name__ == "__main__":
    TinyFlow()
