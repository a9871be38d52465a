"""model.pretrained for every method (names, shapes and the architecture tag checked; torchvision's
resnet18 weights accepted, torchvision's same-shape ResNet-50 refused), and the plain state-dict
export (dense and CSR) that loads without sparse-exp."""
from __future__ import annotations

import pytest
import torch
import torchvision
from omegaconf import OmegaConf

from sparse_exp.errors import ConfigError
from sparse_exp.export import load_compressed
from sparse_exp.export.state_dict import export_run_state_dict
from sparse_exp.models import MODELS
from sparse_exp.models.pretrained import load_pretrained
from sparse_exp.tracking.files import load_torch


def _cfg(name, declared=None):
    return OmegaConf.create({"name": name, "pretrained": None, "pretrained_architecture": declared})


def test_torchvision_resnet18_weights_load_into_resnet18_imagenet(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).eval()
    file = tmp_path / "tv_resnet18.pt"
    torch.save(reference.state_dict(), file)  # a plain state dict, torchvision's names, no tag
    ours = MODELS.get("resnet18_imagenet").build(1000, (3, 224, 224)).eval()
    info = load_pretrained(str(file), ours, _cfg("resnet18_imagenet"))
    assert info["pretrained_architecture"] is None
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(ours(x), reference(x))  # the same function, not only the same shapes


def test_torchvision_resnet50_is_never_loaded_silently_into_table_a7s(tmp_path):
    file = tmp_path / "tv_resnet50.pt"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), file)  # same names and shapes
    ours = MODELS.get("resnet50").build(1000, (3, 224, 224))
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    with pytest.raises(ConfigError, match="carries no architecture tag, and model=resnet50 has lookalikes .* "
                                          "model.pretrained_architecture=resnet50"):
        load_pretrained(str(file), ours, _cfg("resnet50"))
    assert all(torch.equal(v, before[k]) for k, v in ours.state_dict().items())  # nothing loaded
    # a file tagged as another network is refused whatever its shapes; a file of this tool's resnet50 loads
    torch.save({"architecture": "torchvision:resnet50", "state_dict": torch.load(file)}, tmp_path / "tagged.pt")
    with pytest.raises(ConfigError, match="holds a 'torchvision:resnet50' network, not model=resnet50"):
        load_pretrained(str(tmp_path / "tagged.pt"), ours, _cfg("resnet50"))
    torch.save({"architecture": "sparse-exp:resnet50", "state_dict": before}, tmp_path / "ours.pt")
    load_pretrained(str(tmp_path / "ours.pt"), ours, _cfg("resnet50"))
    load_pretrained(str(file), ours, _cfg("resnet50", declared="resnet50"))  # the user vouches for it


def test_model_pretrained_starts_any_method_from_the_weights(run_experiment):
    source, source_dir = run_experiment("method=dense", "trainer.epochs=1", name="source")
    trained = load_torch(source_dir / "checkpoint.pt")["model"]
    metrics, run_dir = run_experiment("method=freezenet", f"model.pretrained={source_dir}", "dry_run=true")
    ckpt = load_torch(run_dir / "checkpoint.pt")
    assert ckpt["architecture"] == "sparse-exp:lenet5"
    for name, keep in ckpt["mask"].items():  # frozen AND trained entries start from the pre-trained weights
        assert torch.equal(ckpt["model"][name], trained[name]), name
    # frozen weights that are not the seed's are stored: the compressed file still rebuilds the model
    model = load_compressed(run_dir / "compressed.npz")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in ckpt["model"].items())
    with pytest.raises(ConfigError, match="model.pretrained: .* holds a 'sparse-exp:lenet5' network, not model=lenet300"):
        run_experiment("method=snip", f"model.pretrained={source_dir}", "model=lenet300", "dry_run=true", name="bad")


def test_state_dict_export_loads_without_sparse_exp(run_experiment):
    metrics, run_dir = run_experiment("method=snip", "method.compression=0.9", "trainer.epochs=1")
    full = load_compressed(run_dir / "compressed.npz").eval()
    x = torch.randn(4, 1, 28, 28)
    for csr in (False, True):
        obj = torch.load(export_run_state_dict(run_dir, csr=csr), weights_only=True)
        # what the README shows, plain torch only
        state = {k: (v.to_dense().reshape(obj["shapes"][k]) if v.layout == torch.sparse_csr else v)
                 for k, v in obj["state_dict"].items()}
        assert (obj["state_dict"]["fc1.weight"].layout == torch.sparse_csr) == csr
        plain = MODELS.get("lenet5").build(10, (1, 28, 28)).eval()
        plain.load_state_dict(state)
        with torch.no_grad():
            assert torch.equal(plain(x), full(x))
        assert obj["normalization"]["mean"] and obj["normalization"]["std"] and obj["architecture"] == "sparse-exp:lenet5"
        nonzero = sum(int((state[n] != 0).sum()) for n in ("conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"))
        assert nonzero <= metrics["params"]["trainable_weights"]
    # and the file is a valid model.pretrained (its tag matches)
    load_pretrained(str(run_dir / "state_dict_csr.pt"), MODELS.get("lenet5").build(10, (1, 28, 28)), _cfg("lenet5"))
