"""A travel booking saga: flight, hotel, car; each step undone by its compensation.

Actions assign new values instead of mutating in place, so a failed transition can
restore the entity exactly and an ORM sees the change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from statekit import CompensationContext, Context, State, StatefulObject, Workflow


@dataclass(eq=False)
class Trip(StatefulObject):
    """A trip booked with three outside providers."""

    id: str
    traveller: str
    bookings: list[str] = field(default_factory=list)


def book_flight(trip: Trip, ctx: Context) -> None:
    """Action of `book_flight`."""
    trip.bookings = [*trip.bookings, "flight"]


def book_hotel(trip: Trip, ctx: Context) -> None:
    """Action of `book_hotel`."""
    trip.bookings = [*trip.bookings, "hotel"]


def book_car(trip: Trip, ctx: Context) -> None:
    """Action of `book_car`."""
    trip.bookings = [*trip.bookings, "car"]


def cancel_flight(trip: Trip, undo: CompensationContext) -> None:
    """Compensation of `book_flight`."""
    trip.bookings = [b for b in trip.bookings if b != "flight"]


def cancel_hotel(trip: Trip, undo: CompensationContext) -> None:
    """Compensation of `book_hotel`."""
    trip.bookings = [b for b in trip.bookings if b != "hotel"]


def cancel_car(trip: Trip, undo: CompensationContext) -> None:
    """Compensation of `book_car`."""
    trip.bookings = [b for b in trip.bookings if b != "car"]


class TripWorkflow(Workflow, name="trip", compensated_state="aborted"):
    """Books flight, hotel and car in turn; a step stuck for 15 minutes is undone."""

    requested = State(initial=True)
    flight_booked = State(timeout=timedelta(minutes=15))
    hotel_booked = State(timeout=timedelta(minutes=15))
    car_booked = State(timeout=timedelta(minutes=15))
    confirmed = State(final=True)
    aborted = State(final=True)

    book_flight = requested.to(flight_booked, action=book_flight, compensate=cancel_flight)
    book_hotel = flight_booked.to(hotel_booked, action=book_hotel, compensate=cancel_hotel)
    book_car = hotel_booked.to(car_booked, action=book_car, compensate=cancel_car)
    confirm = car_booked.to(confirmed)
    abort = (requested | flight_booked | hotel_booked | car_booked).to(aborted)
