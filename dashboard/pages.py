"""The dashboard's pages, in menu order: data that ``app.py`` routes and the tests walk."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Page:
    """A page: its file under ``dashboard/sections/`` (the stem is its URL path; the first
    page is the landing page at ``/``), menu title and icon."""

    stem: str
    title: str
    icon: str

    @property
    def file(self) -> str:
        """The page's file name under ``sections/``."""
        return f"{self.stem}.py"


PAGES: tuple[Page, ...] = (
    Page("finder", "Model finder", ":material/travel_explore:"),
    Page("overview", "Overview", ":material/dashboard:"),
    Page("calibration", "Calibration", ":material/tune:"),
    Page("imagenet_x", "ImageNet-X", ":material/category:"),
    Page("invariance", "Invariance", ":material/transform:"),
    Page("shape_bias", "Shape bias", ":material/pets:"),
    Page("robustness", "Robustness", ":material/shield:"),
    Page("pug", "PUG-ImageNet", ":material/view_in_ar:"),
    Page("ood", "OOD detection", ":material/help_center:"),
    Page("transfer", "Transfer", ":material/move_up:"),
    Page("representations", "Representations", ":material/grid_on:"),
    Page("compare", "Compare two models", ":material/compare_arrows:"),
    Page("own", "Your own images", ":material/photo_library:"),
    Page("explorer", "Explorer", ":material/image_search:"),
    Page("reproduction", "Reproduction", ":material/compare:"),
    Page("live_inference", "Live inference", ":material/upload:"),
    Page("store_overview", "Runs", ":material/storage:"),
)


def url_path(page: Page) -> str:
    """The page's URL path ("" for the landing page)."""
    return "" if page == PAGES[0] else page.stem
