"""Registers flowrecord's decorators with Metaflow (the ``metaflow_extensions`` mechanism).

Metaflow imports this module when it loads its plugins and reads the two lists
below: ``@flowrecord`` records one step (or every step, with
``run --with flowrecord``), ``@flowrecord_base`` records every step of a flow
from one line on the class, the way ``@pypi_base`` extends ``@pypi``. The paths
are relative to this package; the classes themselves stay thin and hand every
observation to :mod:`flowrecord_metaflow`.
"""

STEP_DECORATORS_DESC = [("flowrecord", ".flowrecord_decorator.FlowrecordStepDecorator")]
FLOW_DECORATORS_DESC = [("flowrecord_base", ".flowrecord_decorator.FlowrecordFlowDecorator")]
