"""Every code printer renders through one strict Jinja environment."""

import jinja2
import pytest

from cartinv.codegen import templating


def test_one_environment_for_every_template():
    env = templating.environment()
    assert env is templating.environment()
    for name in ("c_header.h.j2", "cuda_kernels.cu.j2", "torch_module.py.j2", "embedding_guide.md.j2"):
        env.get_template(name)  # every shipped template loads through it
    with pytest.raises(jinja2.TemplateNotFound):
        env.get_template("no_such_template.j2")
    assert {"c_comment", "c_str", "py_comment", "py_str", "md_code"} <= set(env.filters)


def test_an_undefined_name_is_an_error_not_empty_text():
    with pytest.raises(jinja2.UndefinedError):
        templating.environment().from_string("x = {{ missing }}").render()
