"""Writers of tiny data sets in the real layouts of CASME II, SAMM, SMIC-HS, CAS(ME)^3, the
MEGC2019 composite and the manifest, quirks included. Frames are small textured images written
with cv2; the apex frame is the onset shifted by a known amount, so flow has something to find.
"""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import openpyxl


def texture(seed: int, size: int = 48) -> np.ndarray:
    """Smooth random texture, uint8 (size, size)."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.uniform(0, 255, (size, size)).astype(np.float32), (0, 0), 2.0)
    img = (img - img.min()) / (np.ptp(img) + 1e-6) * 200 + 28
    return img.astype(np.uint8)


def shifted(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    m = np.array([[1, 0, dx], [0, 1, dy]], dtype=np.float64)
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), borderMode=cv2.BORDER_REPLICATE)


def write_clip(
    folder: Path,
    numbers: list[int],
    name,
    seed: int = 0,
    ext: str = ".jpg",
    apex_at: int | None = None,
    shift=(1.5, 0.0),
) -> None:
    """Frames ``name(n)`` for each n: the first is the texture, later ones shifted (apex fully)."""
    folder.mkdir(parents=True, exist_ok=True)
    base = texture(seed)
    apex_at = numbers[len(numbers) // 2] if apex_at is None else apex_at
    for n in numbers:
        frac = 0.0 if n == numbers[0] else (1.0 if n >= apex_at else 0.5)
        img = shifted(base, shift[0] * frac, shift[1] * frac)
        cv2.imwrite(str(folder / f"{name(n)}{ext}"), img if ext != ".jpg" else cv2.cvtColor(img, cv2.COLOR_GRAY2BGR))


def write_xlsx(path: Path, rows: list[list], title_rows: list[list] | None = None) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    for r in (title_rows or []) + rows:
        ws.append(r)
    wb.save(path)


def write_csv(path: Path, rows: list[list]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)


CASME2_HEADER = ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units", "Estimated Emotion"]


def casme2(root: Path, sheet: str = "xlsx") -> dict:
    """7 rows: quirks '/' apex, '4+L10', 'R12', 'A1+A2+M57', 'AU4', sub02 as text, reg_img names, fear."""
    rows = [
        [1, "EP02_01f", 46, 59, 86, "4+L10", "disgust"],
        [1, "EP03_02", 10, "/", 30, "R12", "happiness"],  # apex unknown -> middle frame (20)
        ["sub02", "EP01_11f", 5, 9, 14, "A1+A2+M57", "surprise"],  # unknown code M57
        ["02", "EP04_05", 100, 104, 120, "AU4", "others"],
        [2, "EP06_01", 7, 12, 15, "14", "repression"],
        [3, "EP07_03", 20, 25, 31, "4+7", "fear"],  # excluded by the 5-class map
        [3, "EP08_01", 1, 4, 6, "12", "Happiness "],  # case and whitespace
    ]
    frames = {
        ("sub01", "EP02_01f"): [46, 50, 59, 86],
        ("sub01", "EP03_02"): [10, 15, 20, 25, 30],
        ("sub02", "EP01_11f"): [5, 7, 9, 14],
        ("sub02", "EP04_05"): [100, 104, 120],
        ("sub02", "EP06_01"): [7, 12, 15],
        ("sub03", "EP07_03"): [20, 25, 31],
        ("sub03", "EP08_01"): [1, 4, 6],
    }
    for i, ((sub, clip), nums) in enumerate(frames.items()):
        prefix = "reg_img" if clip == "EP04_05" else "img"  # the cropped release's naming
        write_clip(
            root / sub / clip,
            nums,
            lambda n, p=prefix: f"{p}{n}",
            seed=i,
            apex_at=nums[-2] if clip == "EP03_02" else None,
        )
    table = [CASME2_HEADER] + rows
    if sheet == "xlsx":
        write_xlsx(root / "CASME2-coding-20140508.xlsx", table)
    else:
        write_csv(root / "CASME2-coding-20140508.csv", table)
    return {"rows": len(rows), "mapped": 6, "unmapped": {"fear": 1}}


SAMM_HEADER = [
    "Subject",
    "Filename",
    "Inducement Code",
    "Onset Frame",
    "Apex Frame",
    "Offset Frame",
    "Duration",
    "Type",
    "Action Units",
    "Notes",
    "Estimated Emotion",
    "Objective Classes",
]


def samm(root: Path) -> dict:
    title = [
        ["SAMM Micro Movement FACS Codes"],
        ["Version 2"],
        [],
        ["Coder: fixture"],
        ["Notes: rows below"],
        [None, None, "some merged cell"],
        [],
        [],
        [],
        [],
    ]  # a header block of 10 rows
    rows = [
        [6, "006_1_2", 1, 5562, 5588, 5605, 44, "Micro - 1/2", "R14A", "", "Contempt", 3],
        ["006", "006_1_3", 1, 100, 104, 110, 10, "Micro - 1/2", "4+7", "", "Anger", 1],
        [7, "007_5_1", 3, 20, 23, 30, 10, "Micro - 1/2", "12C+6", "", "Happiness", 1],
        [7, "007_5_2", 3, 40, 44, 50, 10, "Micro - 1/2", "1+2+?", "", "Other", 7],  # unknown code '?'
        [7, "007_6_1", 3, 60, 63, 70, 10, "Micro - 1/2", "9", "", "Disgust", 1],  # excluded by samm-5
    ]
    for i, r in enumerate(rows):
        sub = f"{int(r[0]):03d}"
        nums = [r[3], r[4], r[5]]
        write_clip(root / sub / r[1], nums, lambda n, s=sub: f"{s}_{n:05d}", seed=10 + i)
    write_xlsx(root / "SAMM_Micro_FACS_Codes_v2.xlsx", [SAMM_HEADER] + rows, title_rows=title)
    return {"rows": len(rows), "mapped": 4, "unmapped": {"disgust": 1}}


def smic(root: Path) -> dict:
    clips = [
        ("s1", "negative", "s1_ne_01", 5),
        ("s1", "positive", "s1_po_02", 4),
        ("s2", "surprise", "s2_sur_01", 7),
        ("s3", "negative", "s3_ne_03", 6),
    ]
    for i, (sub, emo, clip, n) in enumerate(clips):
        nums = list(range(106720, 106720 + n))
        write_clip(root / sub / "micro" / emo / clip, nums, lambda k: f"image{k}", seed=20 + i, ext=".bmp")
    write_clip(root / "s1" / "non_micro" / "negative" / "s1_ne_99", [1, 2, 3], lambda k: f"image{k}", ext=".bmp")
    return {"rows": len(clips), "mapped": 4}


def casme3(root: Path) -> dict:
    header = ["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class", "emotion"]
    rows = [
        ["spNO.1", "a", 0, 5, 9, "L4+R12", 1, "happy"],
        ["spNO.1", "b", 20, 26, 31, "4+10", 1, "disgust"],
        [2, "c", 3, 6, 12, "15", 1, "sad"],
        [2, "d", 3, 6, 12, "7", 1, "others"],
    ]
    for i, r in enumerate(rows):
        sub = r[0] if isinstance(r[0], str) else f"spNO.{r[0]}"
        folder = root / sub / r[1] / ("color" if r[1] != "d" else "")
        write_clip(folder, [r[2], r[3], r[4]], lambda n: f"{n}", seed=30 + i)
    write_xlsx(root / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx", [header] + rows)
    return {"rows": len(rows), "mapped": 3, "unmapped": {"others": 1}}


def flow_png(path: Path, h: int = 28, w: int = 28, c: int = 3, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, c) if c > 1 else (h, w), dtype=np.uint8)
    cv2.imwrite(str(path), img)


def composite(root: Path, bad: bool = False) -> dict:
    rows = [
        ["casme2", "sub01", "EP02_01f", "negative"],
        ["CASME II", "sub02", "EP03_02", "positive"],
        ["samm", "006", "006_1_2", "1"],
        ["SAMM", "007", "007_5_1", "2"],
        ["smic", "s1", "s1_ne_01", "0"],
        ["SMIC-HS", "s2", "s2_sur_01", "surprise"],
    ]
    for i, (_, sub, sample, _) in enumerate(rows):
        flow_png(root / "flows" / f"{sub}_{sample}.png", seed=i)
    if bad:
        rows.append(["casme2", "sub01", "EP09_01", "negative"])
        flow_png(root / "flows" / "sub01_EP09_01.png", 32, 32, 1)  # wrong size and channels
        rows.append(["samm", "008", "008_1_1", "3"])  # no class 3
        flow_png(root / "flows" / "008_008_1_1.png")
        rows.append(["smic", "s4", "s4_ne_01", "negative"])  # flow file missing
    write_csv(root / "labels.csv", [["dataset", "subject", "sample", "label"]] + rows)
    return {"rows": len(rows), "mapped": 6}
