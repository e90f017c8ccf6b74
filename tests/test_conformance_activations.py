"""check_activation: no false alarms on torch's own activations; each kind of defect caught."""

import textwrap

import pytest
import torch
import torch.nn.functional as F

from suite import activations as A
from suite import cli
from suite.conformance import check_activation

MODULES = {"sigmoid": torch.nn.Sigmoid, "tanh": torch.nn.Tanh, "relu": torch.nn.ReLU,
           "leaky_relu": torch.nn.LeakyReLU, "elu": torch.nn.ELU, "selu": torch.nn.SELU,
           "softplus": torch.nn.Softplus, "gelu": torch.nn.GELU, "silu": torch.nn.SiLU}


@pytest.mark.parametrize("name", A.ELEMENTWISE)
def test_torch_functional_and_modules_pass(name):
    """torch's functions (builtins: parameters found by probing) and nn.Module classes pass
    in every configuration and dtype, although torch loses every digit in some tails."""
    fn = getattr(F, A.ACTIVATIONS[name].torch_name)
    for subject in (fn, MODULES[name]):
        result = check_activation(subject, reference=name, points=40)
        assert result.passed, str(result)
        assert not result.notes, result.notes  # every parameter was exercised


def test_our_numpy_pair_passes_and_a_module_instance_with_its_params():
    act = A.get("elu", alpha=0.5)
    result = check_activation((lambda x, alpha=1.0: A.get("elu", alpha=alpha).forward(x),
                               lambda x, dy, alpha=1.0: A.get("elu", alpha=alpha).backward(x, dy)),
                              reference="elu", points=40)
    assert result.passed, str(result)
    assert set(result.frame["config"]) == {"defaults", "alpha=0.5", "alpha=2.0"}
    assert act.params == {"alpha": 0.5}
    assert check_activation(torch.nn.GELU(approximate="tanh"), reference="gelu",
                            approximate="tanh", points=40).passed
    # the same instance against the other form of the reference fails
    assert not check_activation(torch.nn.GELU(approximate="tanh"), reference="gelu",
                                points=40).passed


class TanhWrongBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, dy):
        (y,) = ctx.saved_tensors
        return dy * (1 - y)  # should be 1 - y * y


class EluFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, alpha):
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return torch.where(x > 0, x, alpha * torch.expm1(x))

    @staticmethod
    def backward(ctx, dy):
        (x,) = ctx.saved_tensors
        return dy * torch.where(x > 0, torch.ones_like(x), ctx.alpha * torch.exp(x)), None


def _failures(result, needle):
    return [f for f in result.failures if needle in f]


def test_wrong_derivative():
    result = check_activation(TanhWrongBackward, reference="tanh", points=40)
    assert not result.passed
    assert _failures(result, "wrong derivative")
    assert all(result.frame[result.frame.quantity == "forward"]["passed"])
    assert "derivative" in str(result)
    assert "1e-3 <= x < 8" in str(result)


def test_autograd_function_with_a_parameter_passes():
    assert check_activation(EluFunction, reference="elu", points=40).passed


def test_overflow_to_inf_and_nan():
    def softplus(x, beta=1.0, threshold=20.0):
        return torch.log1p(torch.exp(beta * x)) / beta  # exp overflows for large x

    result = check_activation(softplus, reference="softplus", configs=[{}], points=40)
    assert not result.passed
    assert _failures(result, "overflow: inf or NaN")
    assert "x >= 8" in str(result)


def test_cancellation_far_worse_than_torch():
    def sigmoid(x):
        return 1 - 1 / (1 + torch.exp(x))  # cancels for x < 0, where torch is accurate

    result = check_activation(sigmoid, reference="sigmoid", dtypes=("float64",), points=40)
    assert not result.passed
    bad = result.frame[~result.frame.passed]
    assert {"x <= -8", "-8 < x <= -1e-3"} <= set(bad.region)
    assert _failures(result, "forward -8 < x <= -1e-3")
    assert any(("loses digits" in f or "false zero" in f) for f in result.failures)
    # (and autograd's derivative of 1/(1 + exp(x)) is inf/inf = NaN for large x)


def test_ignored_parameters():
    def elu(x, alpha=1.0):
        return F.elu(x)  # alpha ignored

    def gelu(x, approximate="none"):
        return F.gelu(x)  # approximate ignored

    for fn, ref in ((elu, "elu"), (gelu, "gelu")):
        result = check_activation(fn, reference=ref, points=40)
        assert not result.passed
        assert _failures(result, "the defaults pass here")
        assert set(result.frame[result.frame.config == "defaults"]["passed"]) == {True}


def test_low_precision_internals():
    def gelu(x):
        return F.gelu(x.float()).to(x.dtype)

    def silu(x):
        return F.silu(x.to(torch.bfloat16)).to(x.dtype)

    r64 = check_activation(gelu, reference="gelu", points=40)
    assert not r64.passed
    assert _failures(r64, "low-precision internals")
    assert r64.frame[r64.frame.dtype == "float32"]["passed"].all()
    r16 = check_activation(silu, reference="silu", dtypes=("float32",), points=40)
    assert not r16.passed
    assert _failures(r16, "half-precision internals")


def test_bad_input_errors():
    with pytest.raises(ValueError, match="unknown reference 'gelv'"):
        check_activation(F.gelu, reference="gelv")
    with pytest.raises(ValueError, match=r"softmax.*is not"):
        check_activation(F.softmax, reference="softmax")
    with pytest.raises(ValueError, match=r"dtypes=.*float16"):
        check_activation(F.gelu, reference="gelu", dtypes=("float16",))
    with pytest.raises(TypeError, match="unknown parameter"):
        check_activation(F.gelu, reference="gelu", approx="tanh")
    result = check_activation(lambda x: x.detach(), reference="relu", points=20)
    assert not result.passed
    assert "no gradient" in str(result)


def test_fixture(activation_conformance):
    res = activation_conformance(torch.nn.SiLU, reference="silu", points=30)
    assert res.passed
    with pytest.raises(pytest.fail.Exception, match="wrong derivative"):
        activation_conformance(TanhWrongBackward, reference="tanh", points=30)


def test_cli(tmp_path, monkeypatch, capsys):
    (tmp_path / "myact.py").write_text(textwrap.dedent("""
        import torch
        import torch.nn.functional as F

        def good(x, approximate="none"):
            return F.gelu(x, approximate=approximate)

        def bad(x, approximate="none"):
            return F.gelu(x)
    """))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", [p for p in __import__("sys").path if p not in ("", ".")])
    assert cli.main(["check-activation", "myact:good", "--reference", "gelu",
                     "--points", "30"]) == 0
    assert "PASS" in capsys.readouterr().out
    assert cli.main(["check-activation", "myact:bad", "--reference", "gelu",
                     "--points", "30"]) == 1
    assert "approximate=tanh" in capsys.readouterr().out
    assert cli.main(["check-activation", "myact:good", "--reference", "gelu", "--params",
                     '{"approximate": "tanh"}', "--points", "30", "--dtypes", "float32"]) == 0
    capsys.readouterr()
    assert cli.main(["check-activation", "myact:nothere", "--reference", "gelu"]) == 2
    assert cli.main(["check-activation", "myact:good", "--reference", "softmax"]) == 2
    assert cli.main(["check-activation", "myact:good", "--reference", "gelu",
                     "--params", "[1]"]) == 2
    err = capsys.readouterr().err
    assert "nothere" in err
    assert "softmax" in err
    assert "JSON object" in err
